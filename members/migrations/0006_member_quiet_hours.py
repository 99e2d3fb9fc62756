# Written by hand: the members app has other models in progress, which makemigrations would
# have folded into this migration.
#
# Cost on a large table: both columns are nullable without a default, so adding them changes
# only the catalog; the CHECK constraint reads every row once (about a second for 1M members)
# under the ALTER TABLE lock.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0005_member_sign_in'),
    ]

    operations = [
        migrations.AddField(
            model_name='member',
            name='quiet_hours_start',
            field=models.TimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='member',
            name='quiet_hours_end',
            field=models.TimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name='member',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('quiet_hours_start__isnull', True), ('quiet_hours_end__isnull', True)), models.Q(('quiet_hours_start__isnull', False), ('quiet_hours_end__isnull', False), models.Q(('quiet_hours_start', models.F('quiet_hours_end')), _negated=True)), _connector='OR'), name='member_quiet_hours_valid'),
        ),
    ]
